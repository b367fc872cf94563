// ddactor entry point: parses the command line and dispatches to a command.
#include <cstdio>
int main() {
  std::puts("ddactor: under construction");
  return 0;
}
