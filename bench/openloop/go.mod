module prescale.dev/bench/openloop

go 1.22
