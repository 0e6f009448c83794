// Runs a command line for the CLI tests: its exit code and standard output
// (callers append " 2>&1" to capture standard error too).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace ballistics::testing {

struct CommandRun {
  int exit_code = -1;  // -1: could not be started, or ended by a signal
  std::string out;
};

inline CommandRun RunCommand(const std::string& command_line) {
  CommandRun r;
  FILE* p = popen(command_line.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof(buf), p)) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ballistics::testing
