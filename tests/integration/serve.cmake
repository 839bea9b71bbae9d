# vsoc serve against kafka-mock and kcat (label integration). A broker or service that does
# not start fails the test. serve.sh bounds every step itself; TIMEOUT only catches a bug.
if(TARGET vsoc AND TARGET kafka-mock AND TARGET vsoc-agent)
  foreach(t parity restart kill reload broker-down bad-input fleet fleet-kill handoff check commands)
    add_test(NAME integration.serve.${t}
             COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/serve.sh ${t})
    set_tests_properties(integration.serve.${t} PROPERTIES LABELS integration TIMEOUT 240
      ENVIRONMENT "VSOC=$<TARGET_FILE:vsoc>;VSOC_GEN=$<TARGET_FILE:vsoc-gen>;VSOC_KAFKA_MOCK=$<TARGET_FILE:kafka-mock>;VSOC_AGENT=$<TARGET_FILE:vsoc-agent>")
  endforeach()
endif()
