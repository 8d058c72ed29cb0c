// Command sauna-bench is sauna with the benchmark's probe responder compiled
// in: the harness runs it exactly like the sauna binary.
//
// With SAUNA_BENCH_CPUPROFILE set (the harness's -sauna-cpuprofile), it
// writes a CPU profile of its first SAUNA_BENCH_CPUPROFILE_SECONDS seconds
// (default 15) to that file: the window is fixed because the harness ends the
// process with a signal that cli.Main turns into os.Exit.
package main

import (
	"log"
	"os"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/sauna-io/sauna/cmd/sauna/cli"
	_ "github.com/sauna-io/sauna/responders/all"

	_ "github.com/sauna-io/sauna/bench/probe"
)

func main() {
	if path := os.Getenv("SAUNA_BENCH_CPUPROFILE"); path != "" {
		profile(path, os.Getenv("SAUNA_BENCH_CPUPROFILE_SECONDS"))
	}
	cli.Main()
}

func profile(path, seconds string) {
	d := 15 * time.Second
	if seconds != "" {
		n, err := strconv.Atoi(seconds)
		if err != nil || n <= 0 {
			log.Fatalf("SAUNA_BENCH_CPUPROFILE_SECONDS: %q is not a positive number", seconds)
		}
		d = time.Duration(n) * time.Second
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatalf("cpu profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatalf("cpu profile: %v", err)
	}
	// Owned by the process: it ends with the window or with the process.
	go func() {
		time.Sleep(d)
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Printf("cpu profile: %v", err)
		}
	}()
}
