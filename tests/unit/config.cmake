# unit.test_serve_config: the configuration of vsoc serve. Its source, cli/serve_config.c,
# is otherwise built only into the vsoc program, so the test compiles it in. The test reads
# docs/config.md and samples/vsoc.yaml through VSOC_SOURCE_DIR.
if(NOT TARGET test_serve_config)
  add_executable(test_serve_config ${CMAKE_CURRENT_LIST_DIR}/test_serve_config.c)
  target_link_libraries(test_serve_config PRIVATE vsoc_connectors)
  target_include_directories(test_serve_config PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  add_test(NAME unit.test_serve_config COMMAND test_serve_config)
  set_tests_properties(unit.test_serve_config PROPERTIES LABELS unit
                       ENVIRONMENT "VSOC_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endif()
target_sources(test_serve_config PRIVATE ${CMAKE_SOURCE_DIR}/cli/serve_config.c)
target_include_directories(test_serve_config PRIVATE ${CMAKE_SOURCE_DIR}/cli)

# unit.test_ring: the service's SPSC ring, cli/ring.c, built only into the vsoc program
# otherwise. test_ring.c is picked up by the glob in tests/CMakeLists.txt; the ring's
# source is added here.
target_sources(test_ring PRIVATE ${CMAKE_SOURCE_DIR}/cli/ring.c)
target_include_directories(test_ring PRIVATE ${CMAKE_SOURCE_DIR}/cli)

# unit.test_deliver: acks and approvals of the delivering processes, cli/deliver.c, built
# only into the vsoc program otherwise. test_deliver.c is picked up by the glob in
# tests/CMakeLists.txt; the source is added here.
target_sources(test_deliver PRIVATE ${CMAKE_SOURCE_DIR}/cli/deliver.c)
target_include_directories(test_deliver PRIVATE ${CMAKE_SOURCE_DIR}/cli)
