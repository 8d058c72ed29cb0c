// Command sauna-bench is sauna with the benchmark's probe responder compiled
// in: the harness runs it exactly like the sauna binary.
package main

import (
	"github.com/sauna-io/sauna/cmd/sauna/cli"
	_ "github.com/sauna-io/sauna/responders/all"

	_ "github.com/sauna-io/sauna/bench/probe"
)

func main() { cli.Main() }
