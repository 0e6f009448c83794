// Placeholder: the owner of this stage replaces this file with its commands.
#include "commands.h"

namespace ballistics::cli {

void RegisterPreprocessCommands(CLI::App& /*app*/) {}

}  // namespace ballistics::cli
