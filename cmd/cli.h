// The vshare command line: one function per subcommand, each taking the
// arguments after the subcommand's name and returning the process exit code.
//
// Exit codes: 0 success, 1 the operation failed, 2 bad usage. Every failure
// prints exactly one line "vshare SUBCOMMAND: reason" to stderr.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "core/replica.h"

namespace vshare::cli {

using Args = std::vector<std::string>;

int Create(const Args& args);
int Mount(const Args& args);
int Serve(const Args& args);
int Stats(const Args& args);
int Ctl(const Args& args);
int ShowStatus(const Args& args);
int Umount(const Args& args);

// Shared plumbing for the subcommands.

// 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.' or '-': safe as a
// file name and never hidden.
bool ValidVolumeName(const std::string& name);
// A fresh identity for this node's share of volume `name`: a volume ID of
// its own for its children, and an originator address for loop detection.
ReplicaConfig NewReplicaConfig(const std::string& name);
class CommandLine;
// --lease and --heartbeat, for every command that runs a tree node.
void AddLeaseOptions(CommandLine& cl);
// Checks them and puts them in *cfg; false, with *why, on a bad value.
bool ApplyLeaseOptions(const CommandLine& cl, ReplicaConfig* cfg, std::string* why);
// `path` made absolute against the current directory (a daemon runs in /).
std::string AbsolutePath(const std::string& path);
int Fail(const std::string& sub, const std::string& why);        // prints, returns 1
int UsageError(const std::string& sub, const std::string& why);  // prints, returns 2

// One subcommand's flags and positional arguments. Every command has -h/--help;
// positionals added with Positional() are required, in order.
class CommandLine {
 public:
  CommandLine(std::string sub, const std::string& usage);
  boost::program_options::options_description_easy_init Options() { return desc_.add_options(); }
  CommandLine& Positional(const std::string& name, const std::string& what);

  // Parses `args`. Returns true when the command should run; otherwise sets
  // *exit_code: 0 after printing --help, 2 after printing a usage error.
  bool Parse(const Args& args, int* exit_code);

  bool Has(const std::string& name) const { return vm_.count(name) > 0; }
  template <typename T>
  T Get(const std::string& name) const { return vm_[name].as<T>(); }
  const std::string& sub() const { return sub_; }

 private:
  std::string sub_;
  boost::program_options::options_description desc_;
  boost::program_options::positional_options_description pos_;
  std::vector<std::string> required_;
  boost::program_options::variables_map vm_;
};

}  // namespace vshare::cli
