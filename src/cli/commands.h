// ballisticsctl subcommands. Each stage's commands live in their own file and
// register themselves on the CLI11 app; main.cc only wires them together.
// A command reports failure by throwing CLI::RuntimeError(exit_code) after
// printing a clear message to stderr (exit code != 0 on any error).
#pragma once

#include <CLI/CLI.hpp>

namespace ballistics::cli {

void RegisterIoCommands(CLI::App& app);         // inspect                (cmd_io.cc)
void RegisterPreprocessCommands(CLI::App& app); // normalize              (cmd_preprocess.cc)
void RegisterStoreCommands(CLI::App& app);     // ingest, db ...         (cmd_store.cc)
void RegisterCorrelateCommands(CLI::App& app); // compare, score-pairs   (cmd_correlate.cc)
void RegisterSynthCommands(CLI::App& app);     // synth                  (cmd_synth.cc)
void RegisterIndexCommands(CLI::App& app);     // search-local           (cmd_index.cc)
void RegisterApiCommands(CLI::App& app);       // admin, audit, upload, casing (cmd_api.cc)
void RegisterEvidenceCommands(CLI::App& app);  // evidence validate, build-reference (cmd_evidence.cc)
void RegisterRegistryCommands(CLI::App& app);  // firearm, sale, trace, microstamp, event (cmd_registry.cc)

// Exit codes shared by all commands.
inline constexpr int kExitUsage = 2;        // bad flags (CLI11's own)
inline constexpr int kExitInputError = 3;   // the input file/data was rejected
inline constexpr int kExitDatabaseError = 4;
inline constexpr int kExitInternal = 5;

}  // namespace ballistics::cli
