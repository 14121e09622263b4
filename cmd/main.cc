// vshare: share one block volume among many hosts. See vshare(1).
#include <malloc.h>

#include <cstdio>
#include <exception>
#include <string>

#include "cmd/cli.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "usage: vshare COMMAND [ARGS...]\n"
               "\n"
               "commands:\n"
               "  create IMAGE --size SIZE     create a sparse image file\n"
               "  mount MOUNTPOINT --export NAME=IMAGE ...\n"
               "                               serve images as MOUNTPOINT/NAME.img\n"
               "  mount MOUNTPOINT --parent HOST:PORT --volume NAME\n"
               "                               join a tree as a child, serving NAME.img\n"
               "  serve --parent HOST:PORT --volume NAME --listen HOST:PORT\n"
               "                               a proxy without a mount\n"
               "  stats MOUNTPOINT [--json]    show a mounted node's counters\n"
               "  status MOUNTPOINT            show where a node sits in the tree\n"
               "  ctl MOUNTPOINT COMMAND       send a control command (flush, drop-cache, reset-stats)\n"
               "  umount MOUNTPOINT            write back every dirty block, then unmount\n"
               "\n"
               "'vshare COMMAND --help' describes each command; man vshare has the rest.\n");
}

}  // namespace

int main(int argc, char** argv) {
  // Block ranges are buffers of a few MiB, made and freed all the time:
  // keep them in the heap rather than in fresh mappings each time (which
  // the kernel must fault in and zero).
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  // The exception wall for the command line: nothing escapes main.
  try {
    if (argc < 2) {
      PrintUsage(stderr);
      return 2;
    }
    const std::string cmd = argv[1];
    const vshare::cli::Args args(argv + 2, argv + argc);
    if (cmd == "create") return vshare::cli::Create(args);
    if (cmd == "mount") return vshare::cli::Mount(args);
    if (cmd == "serve") return vshare::cli::Serve(args);
    if (cmd == "stats") return vshare::cli::Stats(args);
    if (cmd == "ctl") return vshare::cli::Ctl(args);
    if (cmd == "status") return vshare::cli::ShowStatus(args);
    if (cmd == "umount" || cmd == "unmount") return vshare::cli::Umount(args);
    if (cmd == "--version" || cmd == "version") {
      std::printf("vshare %s\n", VSHARE_VERSION);
      return 0;
    }
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      PrintUsage(stdout);
      return 0;
    }
    std::fprintf(stderr, "vshare: unknown command '%s' (try 'vshare --help')\n", cmd.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vshare: internal error: %s\n", e.what());
    return 1;
  }
}
