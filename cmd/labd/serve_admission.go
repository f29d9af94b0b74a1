package main

import (
	"flag"
	"fmt"
	"strconv"

	"github.com/labd/labd/sandbox/enginebox"
	"github.com/labd/labd/web"
)

// defaultMaxSandboxes fits a class of 50 on a small machine (2 cores,
// 24 GiB: idle sandboxes are cheap, about 4 MiB each; busy ones share the
// CPUs evenly by their weight) that moves through the bundled labs: one
// sandbox per learner per lab, three labs open within the idle timeout,
// plus the instructor's; docs/architecture.md, "Admission".
const defaultMaxSandboxes = 200

// defaultWarmSandboxes keeps a few sandboxes ready for learners who
// arrive one by one (each costs a few MiB while it waits); a class that
// arrives at once wants --warm-sandboxes set to its size for the lesson.
const defaultWarmSandboxes = 8

// admissionFlags are labd serve's admission: the most sandboxes at once,
// and how fast one client address may start new learners and sandboxes
// (web/admission.go).
type admissionFlags struct {
	maxSandboxes, rate, burst, warm string
}

func addAdmissionFlags(fs *flag.FlagSet) *admissionFlags {
	f := &admissionFlags{}
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, envDefault(env, def), usage+" (env "+env+")")
	}
	str(&f.maxSandboxes, "max-sandboxes", "LABD_MAX_SANDBOXES", strconv.Itoa(defaultMaxSandboxes),
		`most sandboxes running at once; beyond it a new learner's lab page says the class is full and retries by itself (running sandboxes are never touched)`)
	str(&f.warm, "warm-sandboxes", "LABD_WARM_SANDBOXES", strconv.Itoa(defaultWarmSandboxes),
		`sandboxes kept started ahead of their learners, so that a new learner's terminal is ready at once; set it to the class's size before a class that arrives together (they count against --max-sandboxes); 0: none`)
	str(&f.rate, "admission-rate", "LABD_ADMISSION_RATE", strconv.Itoa(web.DefaultAdmissionRate),
		`new learners and sandboxes one client address may start per minute once its burst is spent; faster ones get 429 with Retry-After; reopening a sandbox never counts; "none" (or 0): no limit`)
	str(&f.burst, "admission-burst", "LABD_ADMISSION_BURST", strconv.Itoa(web.DefaultAdmissionBurst),
		`new learners and sandboxes one client address may start at once (a class behind one NAT needs one per learner)`)
	return f
}

// admission is the resolved admissionFlags.
type admission struct {
	maxSandboxes int
	limit        web.AdmissionLimit
	warm         int // ManagerOptions.Warm
}

// resolve reads the flags; the maximum must fit in the pools (c) every
// sandbox takes a subnet and a uid range from.
func (f *admissionFlags) resolve(c enginebox.Capacity) (admission, error) {
	var a admission
	n, err := count("max-sandboxes", f.maxSandboxes, 1, 0, false)
	if err != nil {
		return a, err
	}
	if err := c.Fit(int(n)); err != nil {
		return a, fmt.Errorf("--max-sandboxes %d: %w; lower it to fit", n, err)
	}
	a.maxSandboxes = int(n)
	w, err := count("warm-sandboxes", f.warm, 0, 0, true)
	if err != nil {
		return a, err
	}
	// Warm sandboxes are places under the maximum: never all of them.
	a.warm = int(min(w, n/2))
	if none(f.rate) {
		a.limit.PerMinute = -1
	} else if r, err := strconv.ParseFloat(f.rate, 64); err != nil || !(r > 0 && r <= 1e6) {
		return a, fmt.Errorf(`--admission-rate %q: want a number of new sandboxes per minute above 0 (e.g. 20 or 0.5) or "none"`, f.rate)
	} else {
		a.limit.PerMinute = r
	}
	b, err := count("admission-burst", f.burst, 1, 1e6, false)
	if err != nil {
		return a, err
	}
	a.limit.Burst = int(b)
	return a, nil
}
