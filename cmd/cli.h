// The vshare command line: one function per subcommand, each taking the
// arguments after the subcommand's name and returning the process exit code.
//
// Exit codes: 0 success, 1 the operation failed, 2 bad usage. Every failure
// prints exactly one line "vshare SUBCOMMAND: reason" to stderr.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace vshare::cli {

using Args = std::vector<std::string>;

int Create(const Args& args);
int Mount(const Args& args);
int Stats(const Args& args);
int Ctl(const Args& args);
int Umount(const Args& args);

// Shared plumbing for the subcommands.
int Fail(const std::string& sub, const std::string& why);   // prints, returns 1
int UsageError(const std::string& sub, const std::string& why);  // prints, returns 2

// Parses `args` against `desc` (with `pos` for positionals) into `vm`.
// Returns false after printing a usage error; *help is set for --help.
bool ParseArgs(const std::string& sub, const Args& args, const boost::program_options::options_description& desc,
               const boost::program_options::positional_options_description& pos,
               boost::program_options::variables_map* vm, int* exit_code);

}  // namespace vshare::cli
