# agent/: the reference vehicle agent (docs/vsoc-agent.md): `vsoc-agent run` over MQTT with
# TLS, `status`, and the offline checks `verify` and `verify-ack`.
add_executable(vsoc-agent ${CMAKE_CURRENT_LIST_DIR}/vsoc_agent.c)
target_link_libraries(vsoc-agent PRIVATE vsoc_agent_core vsoc_connectors)
install(TARGETS vsoc-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
