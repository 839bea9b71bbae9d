# bench/serve.cmake: vsoc-kafka-rate, the fixed-rate producer of bench/serve-bench.sh
# (docs/bench.md, "serve-bench"). Included by bench/CMakeLists.txt. It talks to the broker
# with librdkafka directly, not through connectors/kafka, so that the load it produces does
# not depend on the code being measured.
add_executable(vsoc-kafka-rate ${CMAKE_CURRENT_SOURCE_DIR}/kafka_rate.c)
target_link_libraries(vsoc-kafka-rate PRIVATE PkgConfig::RDKAFKA)
