// SPDX-License-Identifier: MIT
/*
 * vCPU class, kvm backend: one thread per vCPU in a KVM_RUN loop, paused and
 * resumed through the class's transition table (KERNEL-UAPI §3.7).
 *
 * Kicking: every vCPU thread blocks SIG_KICK in user space and unblocks it
 * only inside KVM_RUN (KVM_SET_SIGNAL_MASK).  A kick that lands while the
 * thread handles an exit stays pending and makes the next KVM_RUN return
 * -EINTR at once, so a pause request can never be lost.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include "devices-internal.h"
#include "vcpu/vcpu-arch.h"
#include "util.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define SIG_KICK (SIGRTMIN + 3)
/* The throttle's slice timer: unblocked inside KVM_RUN like SIG_KICK, but
 * apart from it, so that a slice's end does not cut a guest's halt short. */
#define SIG_THROTTLE (SIGRTMIN + 4)
#define VCPU_NICE 10
/* A throttled vCPU runs this long, then sleeps its share of the time
 * (QEMU's CPU_THROTTLE_TIMESLICE_NS). */
#define THROTTLE_SLICE_NS 10000000ULL

static const char *const vcpu_state_names[_VCPU_STATE_MAX] = {
	[VCPU_CREATED] = "created",
	[VCPU_RUNNING] = "running",
	[VCPU_PAUSING] = "pausing",
	[VCPU_QUIESCED] = "quiesced",
	[VCPU_SAVED] = "saved",
	[VCPU_RESTORING] = "restoring",
	[VCPU_RESTORED] = "restored",
	[VCPU_FAILED] = "failed",
	[VCPU_DEAD] = "dead",
	[VCPU_HELD] = "held",
};

#define A(from, to) [(from) * _VCPU_STATE_MAX + (to)] = true
static const bool vcpu_arcs[_VCPU_STATE_MAX * _VCPU_STATE_MAX] = {
	A(VCPU_CREATED, VCPU_RUNNING),     /* fresh boot */
	A(VCPU_CREATED, VCPU_RESTORING),   /* destination */
	A(VCPU_CREATED, VCPU_DEAD),
	A(VCPU_RUNNING, VCPU_PAUSING),     /* kick out of KVM_RUN */
	A(VCPU_PAUSING, VCPU_QUIESCED),    /* parked, pending I/O completed */
	A(VCPU_QUIESCED, VCPU_RUNNING),    /* resume */
	A(VCPU_QUIESCED, VCPU_SAVED),      /* read the state, in order */
	A(VCPU_QUIESCED, VCPU_DEAD),
	A(VCPU_SAVED, VCPU_RUNNING),       /* source rollback */
	A(VCPU_SAVED, VCPU_DEAD),          /* commit: the destination runs it */
	A(VCPU_RESTORING, VCPU_RESTORED),
	A(VCPU_RESTORING, VCPU_FAILED),
	A(VCPU_RESTORED, VCPU_RUNNING),
	A(VCPU_RESTORED, VCPU_DEAD),
	A(VCPU_FAILED, VCPU_DEAD),
	A(VCPU_RUNNING, VCPU_HELD),        /* post-copy's link broke: kicked, not waited for */
	A(VCPU_HELD, VCPU_RUNNING),        /* the link made again */
	A(VCPU_HELD, VCPU_DEAD),
};
#undef A

static void kick_handler(int sig)
{
	(void)sig;
}

/* A kick stays pending after KVM_RUN returns: KVM unblocks SIG_KICK only
 * inside the ioctl and restores the thread's mask (kick blocked) on the way
 * out, so the handler never runs.  Left pending, it would end every later
 * KVM_RUN at once with EINTR and the guest would never run again. */
static bool eat_signal(int sig)
{
	static const struct timespec now = { 0, 0 };
	sigset_t set;
	bool ate = false;

	sigemptyset(&set);
	sigaddset(&set, sig);
	while (sigtimedwait(&set, NULL, &now) == sig)
		ate = true;
	return ate;
}

static void eat_kicks(void)
{
	eat_signal(SIG_KICK);
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void kick_install(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(SIG_KICK, &sa, NULL);
	sigaction(SIG_THROTTLE, &sa, NULL);
}

/* Sleep until `ns` from now, or until a pause or quit is requested, or
 * (throttled) the throttle is lifted. */
static void wait_until(struct vcpu_dev *v, uint64_t ns, bool throttled)
{
	struct timespec ts = mig_timespec_after(CLOCK_MONOTONIC, ns);

	pthread_mutex_lock(&v->lock);
	while (!v->want_pause && !v->quit && (!throttled || atomic_load(&v->throttle_pct))) {
		if (pthread_cond_timedwait(&v->cond, &v->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&v->lock);
}

/* Arm the slice timer: the vCPU runs THROTTLE_SLICE_NS from now, then its
 * thread gets SIG_THROTTLE.  The timer is made on first use, for the
 * thread's id. */
static void throttle_arm(struct vcpu_dev *v)
{
	static const struct itimerspec slice = { .it_value = { 0, (long)THROTTLE_SLICE_NS } };
	pid_t tid = atomic_load(&v->tid);

	if (!tid)
		return;
	pthread_mutex_lock(&v->throttle_lock);
	if (!v->throttle_timer_ok) {
		struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIG_THROTTLE };

		sev.sigev_notify_thread_id = tid;
		v->throttle_timer_ok = timer_create(CLOCK_MONOTONIC, &sev, &v->throttle_timer) == 0;
	}
	if (v->throttle_timer_ok)
		timer_settime(v->throttle_timer, 0, &slice, NULL);
	pthread_mutex_unlock(&v->throttle_lock);
}

/* A slice ended: sleep the throttle's share of the time (pct / (100 - pct)
 * slices), or less if a pause or quit comes, then arm the next slice. */
static void throttle_sleep(struct vcpu_dev *v)
{
	uint32_t pct = atomic_load(&v->throttle_pct);
	uint64_t t0, ns;

	if (!pct)
		return;
	if (pct > 99)
		pct = 99;
	ns = THROTTLE_SLICE_NS * pct / (100 - pct);
	t0 = mig_clock_ns(CLOCK_MONOTONIC);
	/* a throttle lifted ends the sleep too */
	wait_until(v, ns, true);
	atomic_fetch_add(&v->throttled_ns, mig_clock_ns(CLOCK_MONOTONIC) - t0);
	if (atomic_load(&v->throttle_pct))
		throttle_arm(v);
}

static int vcpu_throttle_set(struct mig_device *d, uint32_t pct, struct mig_error *err)
{
	struct vcpu_dev *v = container_of(d, struct vcpu_dev, core);
	uint32_t was;

	(void)err;
	if (pct > 99)
		pct = 99;
	was = atomic_exchange(&v->throttle_pct, pct);
	/* From free to throttled: start the first slice.  Back to free: a
	 * sleep ends now, and the slice running ends once more and finds
	 * nothing to sleep. */
	if (pct && !was)
		throttle_arm(v);
	if (!pct && was) {
		pthread_mutex_lock(&v->lock);
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
	}
	return 0;
}

static const struct mig_throttle_ops vcpu_throttle_ops = {
	.set = vcpu_throttle_set,
};

void vcpu_set_fatal(struct vcpu_dev *v, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&v->lock);
	if (!v->fatal) {
		v->fatal = code;
		va_start(ap, fmt);
		vsnprintf(v->fatal_msg, sizeof(v->fatal_msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&v->lock);
}

/* Sleep until `ns` from now or until a pause or quit is requested. */
void vcpu_wait(struct vcpu_dev *v, uint64_t ns)
{
	wait_until(v, ns, false);
}

void vcpu_halt(struct vcpu_dev *v, uint64_t ns)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_HALTED };
	struct itimerspec its = { .it_value = { (time_t)(ns / 1000000000ULL),
						(long)(ns % 1000000000ULL) } };

	if (!v->no_halt && !v->halt_timer_ok) {
		struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIG_KICK };

		sev.sigev_notify_thread_id = gettid();
		v->halt_timer_ok = timer_create(CLOCK_MONOTONIC, &sev, &v->halt_timer) == 0;
		v->no_halt = !v->halt_timer_ok;
	}
	if (!v->no_halt && ns && ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		v->no_halt = true;    /* arm64 has no HALTED to set */
	if (v->no_halt || !ns) {
		vcpu_wait(v, ns);
		return;
	}
	v->halted = true;
	timer_settime(v->halt_timer, 0, &its, NULL);
}

/* Out of a vcpu_halt(): runnable again, before the guest runs on or the
 * vCPU parks (its saved state must not be asleep: the destination would
 * have nothing to wake it). */
static void vcpu_unhalt(struct vcpu_dev *v)
{
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	static const struct itimerspec off;

	if (!v->halted)
		return;
	v->halted = false;
	timer_settime(v->halt_timer, 0, &off, NULL);
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		vcpu_set_fatal(v, -errno, "vCPU %u: KVM_SET_MP_STATE RUNNABLE after a halt: %s",
			       v->index, strerror(errno));
}

static int vcpu_handle_exit(struct vcpu_dev *v)
{
	struct kvm_run *run = v->run;
	const struct vcpu_exit_ops *x = v->host->exits;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 1 || !x->io_out) {
			vcpu_set_fatal(v, -EPROTO, "vCPU %u: unexpected port I/O (port %#x dir %u size %u)",
				       v->index, run->io.port, run->io.direction, run->io.size);
			return -EPROTO;
		}
		return x->io_out(v->host->exit_arg, v, run->io.port,
				 *((uint8_t *)run + run->io.data_offset));
	case KVM_EXIT_MMIO:
		if (!x->mmio) {
			vcpu_set_fatal(v, -EPROTO, "vCPU %u: MMIO %s of %u bytes at %#llx, and no "
				       "device there", v->index, run->mmio.is_write ? "write" : "read",
				       run->mmio.len, (unsigned long long)run->mmio.phys_addr);
			return -EPROTO;
		}
		return x->mmio(v->host->exit_arg, v, run);
	case KVM_EXIT_SYSTEM_EVENT:
		/* arm64: PSCI SYSTEM_OFF or RESET; the kernel stops every vCPU */
		vcpu_set_fatal(v, -EFAULT, "vCPU %u: the guest %s (system event %u)", v->index,
			       run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? "powered off" :
			       run->system_event.type == KVM_SYSTEM_EVENT_RESET ? "reset itself" :
			       "raised a system event", run->system_event.type);
		return -EFAULT;
	case KVM_EXIT_HYPERCALL:
		if (!x->hypercall) {
			vcpu_set_fatal(v, -EPROTO, "vCPU %u: hypercall %llu exited, and nothing here "
				       "takes it", v->index, (unsigned long long)run->hypercall.nr);
			return -EPROTO;
		}
		return x->hypercall(v->host->exit_arg, v, run);
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
		if (!x->msr) {
			vcpu_set_fatal(v, -EPROTO, "vCPU %u: MSR %#x exited, and nothing here takes "
				       "it", v->index, run->msr.index);
			return -EPROTO;
		}
		return x->msr(v->host->exit_arg, v, run);
	case KVM_EXIT_DIRTY_RING_FULL:
		/* The vCPU cannot run until its ring is harvested and reset. */
		if (!x->dirty_ring_full) {
			vcpu_set_fatal(v, -EPROTO, "vCPU %u: dirty ring full, and nobody harvests it",
				       v->index);
			return -EPROTO;
		}
		return x->dirty_ring_full(v->host->exit_arg, v);
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_SHUTDOWN:
		vcpu_set_fatal(v, -EFAULT, "vCPU %u: guest shut down (triple fault)", v->index);
		return -EFAULT;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_set_fatal(v, -EIO, "vCPU %u: KVM_RUN entry failed, reason %#llx", v->index,
			       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_set_fatal(v, -EIO, "vCPU %u: KVM internal error, suberror %u", v->index,
			       run->internal.suberror);
		return -EIO;
	default:
		vcpu_set_fatal(v, -EPROTO, "vCPU %u: unexpected exit reason %u", v->index,
			       run->exit_reason);
		return -EPROTO;
	}
}

/* Tell the VM the vCPU started or stopped running guest code, stamped now. */
static void vcpu_ran(struct vcpu_dev *v, enum mig_vcpu_run_kind kind)
{
	struct mig_vcpu_run e = { .vcpu = v->index, .kind = kind };

	if (!v->host->exits->ran)
		return;
	e.realtime_ns = mig_realtime_ns();
	e.monotonic_ns = mig_clock_ns(CLOCK_MONOTONIC);
	v->host->exits->ran(v->host->exit_arg, v, &e);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu_dev *v = arg;
	bool completion = false, running = false;
	sigset_t block, inside;
	struct {
		struct kvm_signal_mask m;
		uint8_t set[8];  /* the kernel's sigset_t: 64 bits on x86-64 and arm64 alike */
	} kmask;

	/* Below the VMM's own threads: on a host with fewer cores than busy
	 * vCPUs, the migration and control threads must not starve behind the
	 * guest (they decide how long it is stopped). */
	setpriority(PRIO_PROCESS, (id_t)gettid(), VCPU_NICE);
	{
		char name[16];

		snprintf(name, sizeof(name), "vcpu%u", v->index);
		pthread_setname_np(pthread_self(), name);
	}
	sigemptyset(&block);
	sigaddset(&block, SIG_KICK);
	sigaddset(&block, SIG_THROTTLE);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	pthread_sigmask(SIG_BLOCK, NULL, &inside);
	sigdelset(&inside, SIG_KICK);
	sigdelset(&inside, SIG_THROTTLE);
	atomic_store(&v->tid, gettid());
	/* a throttle set before this thread ran */
	if (atomic_load(&v->throttle_pct))
		throttle_arm(v);
	kmask.m.len = 8;
	memcpy(kmask.set, &inside, 8);
	if (ioctl(v->fd, KVM_SET_SIGNAL_MASK, &kmask) < 0)
		vcpu_set_fatal(v, -errno, "vCPU %u: KVM_SET_SIGNAL_MASK: %s", v->index,
			       strerror(errno));

	for (;;) {
		pthread_mutex_lock(&v->lock);
		if (v->want_pause || v->quit || v->fatal) {
			pthread_mutex_unlock(&v->lock);
			/* The last exit may have left an instruction half done (port
			 * I/O, MMIO): one KVM_RUN with immediate_exit completes it
			 * without running guest code, so the saved state is whole. */
			if (completion) {
				v->run->immediate_exit = 1;
				if (ioctl(v->fd, KVM_RUN, 0) == 0)
					vcpu_handle_exit(v);
				else if (errno == EINTR)
					eat_kicks();
				else
					vcpu_set_fatal(v, -errno, "vCPU %u: completing an I/O exit: %s",
						       v->index, strerror(errno));
				completion = false;
			}
			/* a pause that came before the halt's KVM_RUN */
			vcpu_unhalt(v);
			/* out of KVM_RUN until it is resumed: stamped after the
			 * last guest instruction, before anyone sees it parked */
			if (running)
				vcpu_ran(v, MIG_VCPU_RUN_STOP);
			running = false;
			pthread_mutex_lock(&v->lock);
			v->parked = true;
			pthread_cond_broadcast(&v->cond);
			while ((v->want_pause || v->fatal) && !v->quit)
				pthread_cond_wait(&v->cond, &v->lock);
			v->parked = false;
			if (v->quit) {
				pthread_mutex_unlock(&v->lock);
				break;
			}
		}
		pthread_mutex_unlock(&v->lock);

		/* stamped before the first guest instruction */
		if (!running)
			vcpu_ran(v, MIG_VCPU_RUN_START);
		running = true;
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR) {
				bool slice_end = eat_signal(SIG_THROTTLE);
				bool kicked = eat_signal(SIG_KICK);

				/* a kick, or the end of a vcpu_halt() */
				if (kicked || !slice_end)
					vcpu_unhalt(v);
				/* the throttle's slice ended: a halted vCPU is not
				 * running anyway and stays halted, its next slice
				 * starts now; a running one sleeps its share */
				if (slice_end && v->halted)
					throttle_arm(v);
				else if (slice_end)
					throttle_sleep(v);
				continue;
			}
			if (errno == EAGAIN)
				continue;
			vcpu_set_fatal(v, -errno, "vCPU %u: KVM_RUN: %s", v->index, strerror(errno));
			continue;
		}
		/* an interrupt ended a halt early: KVM made it runnable */
		vcpu_unhalt(v);
		/* exits the next KVM_RUN completes: before the state is read */
		completion = v->run->exit_reason == KVM_EXIT_IO ||
			     v->run->exit_reason == KVM_EXIT_MMIO ||
			     v->run->exit_reason == KVM_EXIT_HYPERCALL ||
			     v->run->exit_reason == KVM_EXIT_X86_RDMSR ||
			     v->run->exit_reason == KVM_EXIT_X86_WRMSR;
		vcpu_handle_exit(v);
	}
	if (v->halt_timer_ok)
		timer_delete(v->halt_timer);
	pthread_mutex_lock(&v->throttle_lock);
	if (v->throttle_timer_ok)
		timer_delete(v->throttle_timer);
	v->throttle_timer_ok = false;
	atomic_store(&v->tid, 0);
	pthread_mutex_unlock(&v->throttle_lock);
	return NULL;
}

static int vcpu_start_thread(struct vcpu_dev *v, struct mig_error *err)
{
	int r;

	pthread_once(&kick_once, kick_install);
	v->run->immediate_exit = 0;
	r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r)
		return mig_error_set(err, -r, "vCPU %u: starting its thread: %s", v->index,
				     strerror(r));
	v->thread_started = true;
	return 0;
}

static int vcpu_step(struct mig_device *d, int to, struct mig_error *err)
{
	struct vcpu_dev *v = container_of(d, struct vcpu_dev, core);
	struct kvm_vm_fds *fds = v->host->fds;

	switch (to) {
	case VCPU_RUNNING:
		if (!v->thread_started)
			return vcpu_start_thread(v, err);
		if (d->state == VCPU_SAVED)
			/* back from a save (a rollback) */
			vcpu_arch_resumed(v->fd);
		pthread_mutex_lock(&v->lock);
		v->run->immediate_exit = 0;
		v->want_pause = false;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
		return 0;
	case VCPU_PAUSING:
	case VCPU_HELD:
		pthread_mutex_lock(&v->lock);
		v->want_pause = true;
		/* immediate_exit covers the window before the signal is unblocked. */
		v->run->immediate_exit = 1;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
		pthread_kill(v->thread, SIG_KICK);
		return 0;
	case VCPU_QUIESCED:
		pthread_mutex_lock(&v->lock);
		while (!v->parked)
			pthread_cond_wait(&v->cond, &v->lock);
		pthread_mutex_unlock(&v->lock);
		return 0;
	case VCPU_SAVED:
		v->saved.len = 0;
		return vcpu_arch_save(fds, v->fd, &v->saved, err);
	case VCPU_RESTORING:
	case VCPU_RESTORED:
	case VCPU_FAILED:
	case VCPU_DEAD:
		/* bookkeeping: load() does the work, destroy() frees the thread */
		return 0;
	default:
		return mig_error_set(err, -EINVAL, "vCPU %u: bad target state %d", v->index, to);
	}
}

static int vcpu_save(struct mig_device *d, struct mig_writer *w, struct mig_error *err)
{
	struct vcpu_dev *v = container_of(d, struct vcpu_dev, core);

	if (d->state != VCPU_SAVED)
		return mig_error_set(err, -EINVAL, "vCPU %u: save in state %s (needs saved)",
				     v->index, mig_device_state_name(d));
	return w->write(w, v->saved.data, v->saved.len, err);
}

/* The whole blob first: it is validated before the first SET ioctl, so a
 * bad one leaves the vCPU untouched (docs/vcpu-state.md). */
static int vcpu_load(struct mig_device *d, struct mig_reader *rd, struct mig_error *err)
{
	struct vcpu_dev *v = container_of(d, struct vcpu_dev, core);
	uint64_t n = rd->remaining(rd);
	uint8_t *p;
	int r;

	if (d->state != VCPU_RESTORING)
		return mig_error_set(err, -EINVAL, "vCPU %u: load in state %s (needs restoring)",
				     v->index, mig_device_state_name(d));
	if (n > MIG_DEVICE_STATE_MAX)
		return mig_error_set(err, -EFBIG, "vCPU %u: state of %llu bytes", v->index,
				     (unsigned long long)n);
	p = malloc(n ? n : 1);
	if (!p)
		return mig_error_set(err, -ENOMEM, "out of memory");
	r = rd->read(rd, p, n, err);
	if (r >= 0)
		r = vcpu_arch_load(v->host->fds, v->fd, p, n, err);
	free(p);
	return r;
}

static int vcpu_describe(struct mig_device *d, struct mig_buf *out, struct mig_error *err)
{
	struct vcpu_dev *v = container_of(d, struct vcpu_dev, core);

	return vcpu_arch_describe(v->host->fds, v->fd, out, err);
}

static int vcpu_check_one(struct mig_device *d, const void *desc, size_t n, unsigned i,
			  struct mig_error *err)
{
	struct vcpu_dev *v = container_of(d, struct vcpu_dev, core);
	int r = vcpu_arch_check_one(v->host->fds, desc, n, i, err);

	return r < 0 ? mig_error_prefix(err, "vCPU %u", v->index) : r;
}

static int vcpu_check(struct mig_device *d, const void *desc, size_t n, struct mig_error *err)
{
	for (unsigned i = 0; vcpu_arch_policies[i]; i++) {
		int r = vcpu_check_one(d, desc, n, i, err);

		if (r < 0)
			return r;
	}
	return 0;
}

/* What a destination host must offer (x86: the guest's CPUID features, its
 * PMU and the MSRs its state holds). */
static const struct mig_compat_ops vcpu_compat_ops = {
	.describe = vcpu_describe, .check = vcpu_check,
	.policies = vcpu_arch_policies, .check_one = vcpu_check_one,
};

static const struct mig_device_ops vcpu_ops = {
	.step = vcpu_step,
	.save = vcpu_save,
	.load = vcpu_load,
};

/*
 * Its place in each stage.  Source: every vCPU is kicked (PAUSING) before
 * any is waited for (QUIESCED), so they leave KVM_RUN in parallel; the final
 * RAM sync can be trusted only once nothing runs that could dirty RAM, and
 * ring entries and PML buffers reach user space only when a vCPU exits.
 * Their state is read after memory is final (reading it writes no RAM).
 * Rollback and start: the vCPUs run last, after the platform's clock.
 * Destination: loaded after RAM and the platform, so nothing runs on a
 * half-filled guest.
 */
static const struct mig_stage_step vcpu_steps[] = {
	{ MIG_STAGE_QUIESCE, 10, VCPU_PAUSING },
	{ MIG_STAGE_QUIESCE, 11, VCPU_QUIESCED },
	{ MIG_STAGE_SAVE, 20, VCPU_SAVED },
	{ MIG_STAGE_RELEASE, 10, VCPU_DEAD },
	{ MIG_STAGE_ROLLBACK, 30, VCPU_RUNNING },
	{ MIG_STAGE_LOAD, 20, VCPU_RESTORED },
	{ MIG_STAGE_START, 30, VCPU_RUNNING },
	{ MIG_STAGE_DISCARD, 10, VCPU_DEAD },
	{ MIG_STAGE_HOLD, 10, VCPU_HELD },
	{ MIG_STAGE_RESUME, 30, VCPU_RUNNING },
};

const struct mig_device_class vcpu_class = {
	.id = MIG_DEV_VCPU,
	.name = "vcpu",
	.version = 1,
	.steps = vcpu_steps,
	.nr_steps = ARRAY_SIZE(vcpu_steps),
	.load_state = VCPU_RESTORING,
	.fail_state = VCPU_FAILED,
	.nr_states = _VCPU_STATE_MAX,
	.state_names = vcpu_state_names,
	.arcs = vcpu_arcs,
	.ops = &vcpu_ops,
	.dirty_ops = NULL,
	.compat_ops = &vcpu_compat_ops,
	.throttle_ops = &vcpu_throttle_ops,
};

int vcpu_dev_create(const struct vcpu_host *host, unsigned index, struct vcpu_dev **ret,
		    struct mig_error *err)
{
	struct vcpu_dev *v = calloc(1, sizeof(*v));
	int mmap_size, r;

	if (!v)
		return mig_error_set(err, -ENOMEM, "out of memory");
	mig_device_init(&v->core, &vcpu_class, index, VCPU_CREATED);
	v->host = host;
	v->index = index;
	pthread_mutex_init(&v->lock, NULL);
	pthread_mutex_init(&v->throttle_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&v->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	v->fd = ioctl(host->fds->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		r = mig_error_set(err, -errno, "KVM_CREATE_VCPU %u: %s", index, strerror(errno));
		goto err_free;
	}
	mmap_size = ioctl(host->fds->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0) {
		r = mig_error_set(err, -errno, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		goto err_close;
	}
	v->run_size = (size_t)mmap_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		r = mig_error_set(err, -errno, "mapping kvm_run of vCPU %u: %s", index,
				  strerror(errno));
		goto err_close;
	}
	r = vcpu_arch_init(host->fds, v->fd, err);
	if (r < 0)
		goto err_unmap;
	*ret = v;
	return 0;

err_unmap:
	munmap(v->run, v->run_size);
err_close:
	close(v->fd);
err_free:
	free(v);
	return r;
}

void vcpu_dev_destroy(struct vcpu_dev *v)
{
	if (!v)
		return;
	if (v->thread_started) {
		pthread_mutex_lock(&v->lock);
		v->quit = true;
		v->run->immediate_exit = 1;
		pthread_cond_broadcast(&v->cond);
		pthread_mutex_unlock(&v->lock);
		pthread_kill(v->thread, SIG_KICK);
		pthread_join(v->thread, NULL);
	}
	munmap(v->run, v->run_size);
	close(v->fd);
	mig_buf_free(&v->saved);
	free(v);
}
