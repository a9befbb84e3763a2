"""Running across machines: an inventory of hosts, reached over SSH, each running a suite detached from the
controller, whose records come back into the normal results folder (`bench run --hosts`, `bench hosts check`).

The controller side (inventory, bundle, remote, controller) needs asyncssh; the device side (probe, agent) needs
only what a measuring run needs, and the probe only the standard library."""
