package enginetest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkRegistry measures, for labd and dockerd side by side against
// docker-registry: the first push of a 4-layer image (busybox + 3 COPY
// layers, one of 8 MiB), the second push after changing only app.py, and a
// pull of it into an engine that has only busybox. Bytes are counted by a
// proxy in front of the registry.
func BenchmarkRegistry(b *testing.B) {
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte((i*7919 + i/4096*31) ^ (i >> 9))
	}
	files := map[string]string{"Dockerfile": "FROM busybox\nCOPY big.bin /big.bin\nCOPY b.txt /b.txt\nCOPY app.py /app.py\n", "big.bin": string(big), "b.txt": "b\n", "app.py": "print('v1')\n"}
	t := &testing.T{}
	_ = t
	for _, e := range benchEngines() {
		reg := StartDockerRegistry(b, nil)
		b.Run(e.Name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				files["app.py"] = fmt.Sprintf("print('v1 %d')\n", i)
				dir := WriteContext(b, files)
				base := fmt.Sprintf("%s/alice/bench%d", reg.Addr, i)
				e.Must(b, DockerCLI20, dir, "build", "-q", "-t", base+":v1", ".")
				measure := func(what string, args ...string) {
					up, down := reg.Up.Load(), reg.Down.Load()
					start := time.Now()
					out := e.Must(b, DockerCLI20, "", args...)
					b.ReportMetric(float64(time.Since(start).Milliseconds()), what+"-ms")
					b.ReportMetric(float64(reg.Up.Load()-up), what+"-bytes-up")
					b.ReportMetric(float64(reg.Down.Load()-down), what+"-bytes-down")
					if strings.Contains(out, "Error") {
						b.Fatal(out)
					}
				}
				measure("push1", "push", base+":v1")
				files["app.py"] = fmt.Sprintf("print('v2 %d')\n", i)
				dir = WriteContext(b, files)
				e.Must(b, DockerCLI20, dir, "build", "-q", "-t", base+":v2", ".")
				measure("push2", "push", base+":v2")
				e.Must(b, DockerCLI20, "", "rmi", base+":v1", base+":v2")
				// Only busybox's layer is local: three layers come down.
				measure("pull", "pull", base+":v2")
				e.Must(b, DockerCLI20, "", "rmi", base+":v2")
			}
		})
	}
}

func benchEngines() []*Engine {
	if pair.Dockerd == nil {
		return []*Engine{pair.Labd}
	}
	return []*Engine{pair.Labd, pair.Dockerd}
}
