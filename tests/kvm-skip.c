// SPDX-License-Identifier: MIT
/*
 * Shared main() for every test binary.  A test file that needs /dev/kvm
 * defines `const int test_requires_kvm = 1;`; without a usable /dev/kvm such a
 * binary prints why and exits 77, which meson counts as a skip (not a pass).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((weak)) extern const int test_requires_kvm;

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests;
	int result = 0;

	if (&test_requires_kvm && test_requires_kvm) {
		int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

		if (fd < 0) {
			perror("SKIP: /dev/kvm is not usable on this host");
			return 77;
		}
		close(fd);
	}
	tests = criterion_initialize();
	if (criterion_handle_args(argc, argv, true))
		result = !criterion_run_all_tests(tests);
	criterion_finalize(tests);
	return result;
}
