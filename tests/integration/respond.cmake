# vsoc respond against a real mosquitto and a real vsoc-agent (label integration): crash and
# resume, resends, acks signed by the wrong key; and over Kafka (librdkafka's mock cluster,
# kcat). tests/integration/respond.sh starts the servers.
set(VSOC_RESPOND_ENV "VSOC=$<TARGET_FILE:vsoc>;VSOC_AGENT=$<TARGET_FILE:vsoc-agent>;VSOC_KAFKA_MOCK=$<TARGET_FILE:kafka-mock>;VSOC_SRC=${CMAKE_SOURCE_DIR}")
foreach(t crash resend kafka)
  add_test(NAME integration.respond.${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/respond.sh ${t})
  set_tests_properties(integration.respond.${t} PROPERTIES LABELS integration TIMEOUT 90
                       ENVIRONMENT "${VSOC_RESPOND_ENV}")
endforeach()
