module github.com/go-contextvars/contextvars/bench/peers

go 1.26.0

require (
	github.com/go-contextvars/contextvars v0.0.0
	github.com/jtolds/gls v4.20.0+incompatible
	github.com/timandy/routine v1.1.6
)

require (
	github.com/gopherjs/gopherjs v1.21.0 // indirect
	github.com/petermattis/goid v0.0.0-20261109124353-7cfa343ad0ab // indirect
)

replace github.com/go-contextvars/contextvars => ../..
