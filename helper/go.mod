module steprun.dev/helper

go 1.25
