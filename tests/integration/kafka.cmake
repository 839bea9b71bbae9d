# Kafka integration tests (label integration): connectors/kafka against kafka-mock, a
# Kafka-protocol broker built on librdkafka's mock cluster and started by the test itself on
# loopback, with kcat as an independent client. A broker that does not start fails the test.
set(VSOC_TOOLS_DIR ${CMAKE_SOURCE_DIR}/tests/tools)

# kafka-mock: also used by the responder's and the service's tests (VSOC_KAFKA_MOCK).
add_executable(kafka-mock ${VSOC_TOOLS_DIR}/kafka_mock.c)
target_link_libraries(kafka-mock PRIVATE PkgConfig::RDKAFKA)

add_executable(vsoc-kafka-roundtrip ${VSOC_TOOLS_DIR}/kafka_roundtrip.c)
target_link_libraries(vsoc-kafka-roundtrip PRIVATE vsoc_connectors PkgConfig::RDKAFKA)

set(VSOC_KAFKA_ENV "VSOC_KAFKA_MOCK=$<TARGET_FILE:kafka-mock>;VSOC_KAFKA_ROUNDTRIP=$<TARGET_FILE:vsoc-kafka-roundtrip>")
foreach(t conf commands acks broker-down group-eager group-cooperative commit-restart
          async faults lag)
  add_test(NAME integration.kafka.${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/kafka.sh ${t})
  # kafka.sh bounds each step itself; TIMEOUT only catches a bug in the script.
  set_tests_properties(integration.kafka.${t} PROPERTIES LABELS integration TIMEOUT 120
                       ENVIRONMENT "${VSOC_KAFKA_ENV}")
endforeach()
