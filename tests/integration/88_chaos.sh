#!/usr/bin/env bash
# A short seeded fault storm (tests/chaos/storm.sh; `make chaos` runs a long one): on a real 3-node
# Kafka cluster, while ~100 track ids of the dev corpus are uploaded, re-uploaded, deleted and
# reindexed and clients match against two edges, every fault kind strikes once or more (workers,
# the replicator — also between Kafka's ack and its position —, edges, brokers by SIGKILL /
# SIGSTOP / restart incl. the controller and partition leaders, a preferred-leader election,
# PostgreSQL fast and immediate shutdown, retention forcing a snapshot bootstrap; and, as root, a
# partition, loss and delay on the link of edge eB, which runs in a network namespace of its own —
# without root the storm says so and leaves the network faults out). Afterwards
# nothing acknowledged is lost or duplicated, nothing deleted is anywhere, the edges verify, the
# DLQ holds exactly the poison events and no match was wrong. SH_SEED / CHAOS_SEED repeats a run.
# make test runs seed 11 (every fault kind strikes): a CI run is reproducible; `make chaos` draws
# a new seed each time to find new schedules.
set -euo pipefail
export CHAOS_SEED="${CHAOS_SEED:-${SH_SEED:-11}}"
export CHAOS_SECONDS="${CHAOS_SECONDS:-45}" CHAOS_TRACKS="${CHAOS_TRACKS:-80}" CHAOS_FAULT_GAP="${CHAOS_FAULT_GAP:-4}"
exec bash "$SH_ROOT/tests/chaos/storm.sh"
