# MQTT integration tests (label integration): vsoc-agent run against a real mosquitto with TLS
# client certificates and the per-vehicle ACL, started on loopback by tests/integration/mqtt.sh
# itself; the SOC side is played by mosquitto_pub/mosquitto_sub with the SOC's certificate and
# vsoc-sign-envelope. A broker that does not start fails the test.
add_executable(vsoc-sign-envelope ${CMAKE_SOURCE_DIR}/tests/tools/sign_envelope.c)
target_link_libraries(vsoc-sign-envelope PRIVATE vsoc_engine)

set(VSOC_MQTT_ENV "VSOC_AGENT=$<TARGET_FILE:vsoc-agent>;VSOC_SIGN=$<TARGET_FILE:vsoc-sign-envelope>;VSOC_SRC=${CMAKE_SOURCE_DIR}")
foreach(t ack acl reject dedupe gate ttl restart reconnect)
  add_test(NAME integration.mqtt.${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/mqtt.sh ${t})
  # mqtt.sh bounds each step itself; TIMEOUT only catches a bug in the script.
  set_tests_properties(integration.mqtt.${t} PROPERTIES LABELS integration TIMEOUT 60
                       ENVIRONMENT "${VSOC_MQTT_ENV}")
endforeach()

# tests/unit/test_agent_core.c drives agent/agent_core.c without a network; the unit-test glob
# links only vsoc_connectors, so the agent's logic is added here.
if(TARGET test_agent_core AND TARGET vsoc_agent_core)
  target_link_libraries(test_agent_core PRIVATE vsoc_agent_core)
endif()
