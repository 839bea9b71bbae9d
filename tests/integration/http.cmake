# HTTP endpoint test (label integration): connectors/http served on loopback by the test
# itself and queried over real TCP sockets with a small HTTP/1.1 client, and with curl when
# curl is installed. A server that does not start fails the test.
add_executable(test_http ${CMAKE_CURRENT_LIST_DIR}/test_http.c)
target_link_libraries(test_http PRIVATE vsoc_connectors)
target_include_directories(test_http PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
add_test(NAME integration.http COMMAND test_http)
# The test bounds each wait itself (5 s socket timeouts); TIMEOUT only catches a bug.
set_tests_properties(integration.http PROPERTIES LABELS integration TIMEOUT 60)
