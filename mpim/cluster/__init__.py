"""``mpim cluster``: run a whole distributed MPIM on one machine.

The successor of the original MPIM's ``bin/start.sh`` / ``stop.sh``: one
file (``deploy/cluster.toml``) lists the processes, ``start`` launches them
detached with a log and a pid file each, ``status`` shows what runs, what
ZooKeeper knows and whether each process answers, ``stop`` ends them
gracefully in dependency order.

Modules: ``config`` (the cluster file), ``tomlwrite`` (the settings file the
processes read), ``procs`` (pid files, logs, launching), ``probe`` (health
and ZooKeeper), ``commands`` (start/stop/status), ``cli`` (the subcommand).
"""
