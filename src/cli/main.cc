// ballisticsctl: the command-line tool for technicians, examiners and admins.
#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"ballisticsctl - ballistic imaging correlation toolkit"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("ballisticsctl ") + BALLISTICS_VERSION);
  ballistics::cli::RegisterIoCommands(app);
  ballistics::cli::RegisterPreprocessCommands(app);
  ballistics::cli::RegisterStoreCommands(app);
  ballistics::cli::RegisterCorrelateCommands(app);
  ballistics::cli::RegisterSynthCommands(app);
  ballistics::cli::RegisterIndexCommands(app);
  ballistics::cli::RegisterApiCommands(app);
  ballistics::cli::RegisterEvidenceCommands(app);
  ballistics::cli::RegisterRegistryCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
