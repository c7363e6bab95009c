// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: a lab VM spec, as `vm create --lab SPEC` and an
 * agent's VM_CREATE take it (docs/chaos.md, "Fuzzing").  A spec that
 * parses and passes the checks must survive the wire: lab_to_wire() then
 * lab_from_wire() gives back the same description.
 */
#include <stdint.h>
#include <string.h>

#include <migrate/control.h>
#include <migrate/lab.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_error err = { 0 };
	struct lab_config cfg;
	char *spec;

	/* a C string, as the command line or the wire's spec field gives it */
	spec = malloc(size + 1);
	FUZZ_ASSERT(spec);
	memcpy(spec, data, size);
	spec[size] = '\0';
	lab_config_default(&cfg);
	if (lab_spec_parse(spec, &cfg, &err) == 0 && lab_config_check(&cfg, &err) == 0) {
		struct mig_lab_wire w, w2;
		struct lab_config back;

		lab_to_wire(&cfg, &w);
		FUZZ_ASSERT(lab_from_wire(&w, &back, &err) == 0);
		lab_to_wire(&back, &w2);
		FUZZ_ASSERT(memcmp(&w, &w2, sizeof(w)) == 0);
	}
	fuzz_error_ok(&err);
	free(spec);
	return 0;
}
