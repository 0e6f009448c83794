// ballisticsd: the correlation server. Thin until the API issue lands.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  CLI::App app{"ballisticsd - ballistic imaging correlation server"};
  app.set_version_flag("--version", std::string("ballisticsd ") + BALLISTICS_VERSION);
  CLI11_PARSE(app, argc, argv);
  spdlog::info("ballisticsd {}: no services yet", BALLISTICS_VERSION);
  return 0;
}
