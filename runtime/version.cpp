#include "runtime/version.hpp"
