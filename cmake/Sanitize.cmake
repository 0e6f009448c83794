# BALLISTICS_SANITIZE=address,undefined (any list -fsanitize= accepts): every
# target of the build is instrumented, with gcc or clang. UBSan findings abort
# (-fno-sanitize-recover) so that a test with undefined behaviour fails instead
# of printing a line nobody reads. Usage and findings: docs/reliability.md.
if(BALLISTICS_SANITIZE)
  add_compile_options(-fsanitize=${BALLISTICS_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${BALLISTICS_SANITIZE} -fno-sanitize-recover=all)
endif()
