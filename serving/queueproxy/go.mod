module prescale.dev/serving/queueproxy

go 1.22
