package e2e_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Admission (issue 13): a web client loading lab pages without a cookie,
// as fast as it can, used to get a sandbox per load until the network
// pool ran out and every new learner got "Could not start your sandbox".
// Now it gets at most its burst (and never more than --max-sandboxes at
// once); the rest are told to come back (429 or 503, Retry-After). labd
// serve runs with the small limits below, and every client of this test is
// on 127.0.0.1: the flood and the class share one bucket, so what must
// hold is that the learners who have a sandbox keep it, and that new
// learners get in again once the flood's sandboxes end. (From another
// address, the class would not notice the flood's bucket at all: the
// web tests show that.)
func init() {
	attacks = append(attacks, attack{
		name:    "a flood of cookie-less lab page loads is turned away and the learners keep their sandboxes",
		script:  `echo "the flood comes from a web client outside the sandbox"`,
		timeout: time.Minute,
		check:   floodLabPages,
	})
}

// Admission of the suite's labd serve (attack_test.go), smaller than the
// defaults (200, 100, 50 a minute) so that the flood's sandboxes (each
// keeps a uid range of the data dir for good) stay few.
const (
	floodMax   = 16 // --max-sandboxes
	floodBurst = 8  // --admission-burst
	floodRate  = 4  // --admission-rate, per minute
)

var destroyedRE = regexp.MustCompile(`msg="sandbox destroyed" id=(\S+) reason="shell exited"`)

// pageLoad is one cookie-less browser opening the attack lab.
type pageLoad struct {
	status int
	retry  string
	sid    string
	c      *http.Client // its cookies: the flood's learner
}

func loadAttackLab(t *testing.T, a *attackEnv, c *http.Client) pageLoad {
	req, _ := http.NewRequest("GET", a.srv.url+"/labs/attack-lab", nil)
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", "none")
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("page load: %v", err)
		return pageLoad{}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := pageLoad{status: resp.StatusCode, retry: resp.Header.Get("Retry-After"), c: c}
	if m := sandboxAttr.FindSubmatch(body); m != nil {
		p.sid = string(m[1])
	}
	return p
}

func newFloodBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 2 * time.Minute}
}

func floodLabPages(t *testing.T, a *attackEnv, _ string, _ int) {
	const loads, workers = 300, 10
	jobs := make(chan struct{})
	answers := make(chan pageLoad, loads)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				answers <- loadAttackLab(t, a, newFloodBrowser())
			}
		}()
	}
	for range loads {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	close(answers)
	elapsed := time.Since(start)

	var admitted []pageLoad
	counts := map[int]int{}
	for p := range answers {
		counts[p.status]++
		switch p.status {
		case 200:
			if p.sid == "" {
				t.Errorf("200 without a sandbox")
				continue
			}
			admitted = append(admitted, p)
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if n, err := strconv.Atoi(p.retry); err != nil || n < 1 {
				t.Errorf("%d with Retry-After %q, want whole seconds", p.status, p.retry)
			}
		default:
			t.Errorf("flood answered %d, want 200, 429 or 503", p.status)
		}
	}
	t.Logf("%d cookie-less page loads in %v: %v", loads, elapsed.Round(time.Second), counts)
	// Two sandboxes (the victim's, the attacker's) were there before.
	if limit := min(floodMax-2, floodBurst+int(elapsed.Minutes()*floodRate)+1); len(admitted) > limit {
		t.Errorf("the flood got %d sandboxes, want at most %d (burst, refill, --max-sandboxes)", len(admitted), limit)
	}
	if counts[http.StatusTooManyRequests]+counts[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no page load of the flood was turned away")
	}
	if log := a.srv.log(); counts[http.StatusTooManyRequests] > 0 && !strings.Contains(log, "admission: too many new learners and sandboxes from one client") {
		t.Errorf("429s without a warning in labd's log")
	}

	// The learners who have a sandbox keep it: the page, and the shell.
	if p := loadAttackLab(t, a, a.victim.c); p.status != 200 || p.sid != a.victim.sid {
		t.Errorf("the victim reopening the lab after the flood: %d, sandbox %q; want 200 %s", p.status, p.sid, a.victim.sid)
	}
	if out, code, ok := a.victim.sh(`echo still-here`, time.Minute); !ok || code != 0 || !strings.Contains(out, "still-here") {
		t.Errorf("the victim's shell after the flood: exit %d, %q", code, out)
	}

	// The flood's learners leave (their shells exit): their places free up.
	sids := map[string]bool{}
	for _, p := range admitted {
		sids[p.sid] = true
		attachLab(t, a.srv, "attack-lab", p.c).typeLine("exit")
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		gone := 0
		for _, m := range destroyedRE.FindAllStringSubmatch(a.srv.log(), -1) {
			if sids[m[1]] {
				gone++
			}
		}
		if gone >= len(sids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the flood's %d sandboxes ended after their shells exited", gone, len(sids))
		}
	}

	// A new learner gets in again, once the address's bucket has a token.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		p := loadAttackLab(t, a, newFloodBrowser())
		if p.status == 200 && p.sid != "" {
			attachLab(t, a.srv, "attack-lab", p.c).typeLine("exit")
			break
		}
		n, err := strconv.Atoi(p.retry)
		if p.status != http.StatusTooManyRequests || err != nil || time.Now().After(deadline) {
			t.Fatalf("a new learner after the flood: %d (Retry-After %q), want 200, or 429 until the bucket refills", p.status, p.retry)
		}
		time.Sleep(time.Duration(n) * time.Second)
	}
}
