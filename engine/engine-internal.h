/* SPDX-License-Identifier: MIT */
/* Shared by the two engines (engine/): what neither shows outside. */
#ifndef ENGINE_INTERNAL_H
#define ENGINE_INTERNAL_H

#include <migrate/engine.h>

#define MIG_BATCH_PAGES MIG_PAGES_MAX

#endif
