#!/bin/sh
# Runs the scenario's level-1 script between the "@@L1 ready" and
# "@@L1 done" markers, the same way in nested and direct mode.
read -r up _ < /proc/uptime
# The newline ends whatever the firmware left unfinished ("Booting from
# ROM..."), so the marker starts a line.
echo
echo "@@L1 ready mode=$SANDBOX_MODE uptime=$up"
/bin/sh "$SANDBOX_DIR/scenario.sh" "$@"
rc=$?
echo
echo "@@L1 done rc=$rc"
exit $rc
