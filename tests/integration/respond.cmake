# vsoc respond against a real mosquitto and a real vsoc-agent (label integration): crash and
# resume, resends, acks signed by the wrong key. tests/integration/respond.sh starts both.
set(VSOC_RESPOND_ENV "VSOC=$<TARGET_FILE:vsoc>;VSOC_AGENT=$<TARGET_FILE:vsoc-agent>;VSOC_SRC=${CMAKE_SOURCE_DIR}")
foreach(t crash resend)
  add_test(NAME integration.respond.${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/respond.sh ${t})
  set_tests_properties(integration.respond.${t} PROPERTIES LABELS integration TIMEOUT 90
                       ENVIRONMENT "${VSOC_RESPOND_ENV}")
endforeach()
