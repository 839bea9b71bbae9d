# agent/: the reference vehicle agent (docs/envelope.md). For now only `vsoc-agent verify`.
add_executable(vsoc-agent ${CMAKE_CURRENT_LIST_DIR}/vsoc_agent.c)
target_link_libraries(vsoc-agent PRIVATE vsoc_engine)
install(TARGETS vsoc-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
