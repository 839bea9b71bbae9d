# Redis integration test (label integration): connectors/redis against real redis-server
# processes that tests/integration/test_redis.c starts on loopback itself (a server that does
# not start fails the test), compared hit by hit with the in-process counter of engine/fleet.c.
add_executable(vsoc-test-redis ${CMAKE_CURRENT_LIST_DIR}/test_redis.c)
target_link_libraries(vsoc-test-redis PRIVATE vsoc_connectors)
target_include_directories(vsoc-test-redis PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
add_test(NAME integration.redis COMMAND vsoc-test-redis)
# The test bounds each step itself; TIMEOUT only catches a bug in it.
set_tests_properties(integration.redis PROPERTIES LABELS integration TIMEOUT 60)
