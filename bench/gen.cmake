# bench/gen.cmake: vsoc-gen, the synthetic traffic generator (docs/vsoc-gen.md).
# Included by bench/CMakeLists.txt. It depends on libc only, not on the engine library,
# so samples/regen.sh can also build it with a bare C compiler.
add_executable(vsoc-gen ${CMAKE_CURRENT_SOURCE_DIR}/gen.c)
# Put it next to the vsoc binary (the top of the build dir), where the bench scripts,
# samples/regen.sh and the end-to-end tests look for it.
set_target_properties(vsoc-gen PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
