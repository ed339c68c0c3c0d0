"""The crash-safe fetch of the Redis transport: a kombu Redis channel that takes up to a batch of
messages and records them as unacknowledged in one atomic step (``redis.Channel`` builds on it).

**The fetch.** kombu takes a message off the list with BRPOP and records it as unacknowledged
(``unacked`` hash, ``unacked_index`` sorted set) in a second round trip; a worker SIGKILLed
between the two loses the message. Here one Lua script (``redis_script.FETCH``) takes up to a
batch of messages (the free prefetch slots, at most ``fetch_limit``) and records each in kombu's own
structures, with kombu's own key names and formats (what ``QoS.append`` writes), in the same
atomic step. Whatever instant the worker dies, every message is either still queued or in
``unacked``, where kombu's ``restore_visible`` puts it back after the visibility timeout. The
script records before it trims the list: should it ever stop half way (Redis does not undo a
script's writes), every message would be queued or recorded, at worst both (delivered twice),
never neither. Publishing is kombu's, unchanged. kombu's own structures rather than a
per-consumer processing list (RPOPLPUSH / BLMOVE into a list of one's own, as RQ and Sidekiq
do): that list would need its own recovery (an owner heartbeat, someone to sweep dead owners'
lists), its own acknowledgement (LREM, linear in the list) and its own requeue, none of which
kombu's ``restore_visible``, ``ack``, ``reject`` or the bulk ack would know about; and it
blocks on one key too.

**Blocking.** A script cannot block. While fetches come back full the channel fetches again at
once (the EVALSHA takes the event loop's usual BRPOP slot). After one that took less than it
could, the channel waits with ``BLMOVE q q RIGHT RIGHT timeout`` on the first queue it consumes
from: the command blocks like BRPOP but, with the same list as source and destination and the
same end, moves the oldest message from the tail to the tail, i.e. leaves the list exactly as it
was. Its reply only says "there is something": the fetch that follows, in the same turn of the
loop, takes it (two round trips a message in a trickle, as kombu's BRPOP and record). After a
fetch that took some messages but fewer than it could (a trickle), the channel first pauses
``fetch_pause`` seconds (a BLMOVE on a key nobody writes: Redis keeps the time, and the event
loop stays free), then takes what gathered in one fetch: at 1,800 events/s a fetch took one or
two messages, and the consumer's round trips were most of its time (docs/BENCHMARKS.md). The
first message after a quiet spell still goes at once: a fetch that found nothing is followed
by the wait on the queue. The other
keys (the other queues, and the priority sub-queues: the queue name, kombu's separator and the
step) are looked at by every fetch, so they are polled: right after one of them gave a message,
every ``fetch_poll_min`` seconds, then twice as long after each wait that saw nothing, up to the
BRPOP timeout (1 s by default, as kombu's own BRPOP wakes). List the latency-sensitive queue
first. Every consumer waiting on a queue wakes for each message there (the wait takes nothing);
all but one then fetch nothing: cheap with a few workers a queue, worth knowing with dozens.
Priorities are kombu's: the script serves the keys in kombu's BRPOP order (priority step first,
then queues in the channel's fair cycle), draining each key oldest first. Redis 6.2 or newer is
needed (BLMOVE); on an older server the channel logs an error and uses kombu's fetch.

**Everything else** is kombu's: acknowledgement, rejection, restore at shutdown and after the
visibility timeout, fanout, the event-loop integration (``MultiChannelPoller`` calls
``_brpop_start`` / ``_brpop_read``, which are overridden here and keep kombu's state:
``_in_poll``, ``_brpop_sent_at``, the paused-reply and health-check logic around them).
``transport_options={"atomic_fetch": False}`` gives kombu's own BRPOP path back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from queue import Empty
from time import monotonic, time
from typing import Any, NamedTuple

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads  # what kombu decodes a queued message with
from kombu.utils.scheduling import round_robin_cycle
from redis.exceptions import NoScriptError

from services_ai_plugins.infra.internals.redis_script import FETCH, FETCH_SHA, MAX_FETCH_LIMIT

__all__ = [
    "PRIVATE_NAMES",
    "AtomicFetchChannel",
    "QoS",
    "server_has_blmove",
]

log = logging.getLogger(__name__)

_Channel, _QoS, _Poller = kombu_redis.Channel, kombu_redis.QoS, kombu_redis.MultiChannelPoller

#: (object, attribute): every name of kombu's this module relies on that kombu does not promise
#: to keep (underscore names, the channel's internal state and settings, the event loop that
#: calls the overrides). Their signatures are checked in ``tests/test_internals.py``.
PRIVATE_NAMES: list[tuple[Any, str]] = [
    # the channel: methods overridden or called
    (_Channel, "_get"),
    (_Channel, "_brpop_start"),
    (_Channel, "_brpop_read"),
    (_Channel, "_q_for_pri"),
    (_Channel, "_flush_brpop_reauth"),
    (_Channel, "_poll_error"),
    (_Channel, "_maybe_update_queues_expire"),
    (_Channel, "basic_consume"),
    (_Channel, "basic_get"),
    (_Channel, "conn_or_acquire"),
    # the channel: state and settings read or set
    (_Channel, "_in_poll"),
    (_Channel, "_brpop_sent_at"),
    (_Channel, "_queue_cycle"),
    (_Channel, "_closing"),
    (_Channel, "from_transport_options"),
    (_Channel, "priority_steps"),
    (_Channel, "global_keyprefix"),
    (_Channel, "unacked_key"),
    (_Channel, "unacked_index_key"),
    (_Channel, "ack_emulation"),
    (_Channel, "brpop_timeout"),
    (_Channel, "QoS"),
    # the QoS: the delivery record
    (_QoS, "append"),
    (_QoS, "restore_visible"),
    (_QoS, "restore_by_tag"),
    (virtual.QoS, "append"),
    (virtual.QoS, "can_consume_max_estimate"),
    (virtual.Transport, "_deliver"),
    # the event loop that calls the overrides
    (_Poller, "_register_BRPOP"),
    (_Poller, "on_readable"),
    (_Poller, "handle_event"),
    # kombu's key prefixing (the fetch leaves the first script key to it)
    (kombu_redis.GlobalKeyPrefixMixin, "_prefix_args"),
    (kombu_redis.GlobalKeyPrefixMixin, "PREFIXED_COMPLEX_COMMANDS"),
    (round_robin_cycle, "consume"),
    (round_robin_cycle, "rotate"),
]

_NOT_KOMBUS = "Not a kombu message (taken off the queue, dropped): %r"


class Pending(NamedTuple):
    """What is in flight on the consuming connection: the command, and for a fetch the queue
    and the list of each position in its reply, and the most it may return."""

    command: str
    owners: list[str]
    keys: list[str]
    limit: int


_WAIT = Pending("BLMOVE", [], [], 0)
_PAUSE = Pending("BLMOVE", [], [], -1)  # a wait on a key that never has messages


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS; a message the fetch script already recorded is not recorded again.

    kombu records a delivered message in ``append`` (called by the consumer callback, during
    ``Transport._deliver``). The channel marks the delivery tags its script recorded just before
    delivering them; anything else (a fanout message, a message of another channel) takes
    kombu's own path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class AtomicFetchChannel(kombu_redis.Channel):
    """kombu's Redis channel with the crash-safe batch fetch (the module docstring)."""

    QoS = QoS

    #: The crash-safe fetch (False: kombu's BRPOP, then a second round trip to record).
    atomic_fetch = True
    #: Most messages one round trip takes (fewer when fewer prefetch slots are free).
    fetch_limit = 50
    #: Seconds between looks at the keys the channel does not block on, right after one of
    #: them gave a message (doubling after each empty look, up to ``brpop_timeout``).
    fetch_poll_min = 0.005
    #: Seconds to let messages gather after a fetch that took some but fewer than it could
    #: (a trickle), before the next fetch (0: wait on the queue, i.e. fetch as each arrives).
    fetch_pause = 0.0

    from_transport_options = (  # type: ignore[assignment]
        *kombu_redis.Channel.from_transport_options,
        "atomic_fetch",
        "fetch_limit",
        "fetch_poll_min",
        "fetch_pause",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._no_ack_queues: set[str] = set()
        self._fetch_next = True  # the next command is a fetch (else a wait)
        self._pause_next = False  # the next wait is a pause (the last fetch took a trickle)
        self._pending: Pending | None = None  # in flight on _in_poll
        self._script_loaded = False
        super().__init__(*args, **kwargs)
        if self.atomic and not server_has_blmove(self._create_client()):
            log.error(
                "Redis before 6.2 has no BLMOVE: using kombu's own fetch, which loses a message"
                " to a worker killed between taking and recording it"
            )
            self.atomic_fetch = False
        self.fetch_limit = max(1, min(int(self.fetch_limit), MAX_FETCH_LIMIT))
        self.fetch_poll_min = max(0.001, float(self.fetch_poll_min))
        self.fetch_pause = max(0.0, min(float(self.fetch_pause), 1.0))
        self._poll_interval = self.fetch_poll_min

    @property
    def atomic(self) -> bool:
        """Whether this channel fetches with the script. Without ack emulation kombu records
        nothing, and neither does this channel."""
        return bool(self.atomic_fetch and self.ack_emulation)

    # -- consumers ---------------------------------------------------------------------------

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        no_ack = kwargs.get("no_ack", args[0] if args else False)
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        if no_ack and self.atomic:
            # kombu takes it without recording it: nothing to make atomic.
            try:
                return self.Message(kombu_redis.Channel._get(self, queue), channel=self)
            except Empty:
                return None
        return super().basic_get(queue, no_ack=no_ack, **kwargs)

    # -- the fetch ---------------------------------------------------------------------------

    def _fetch_keys(self, queues: Sequence[str]) -> tuple[list[str], list[str]]:
        """The lists to take from, in kombu's BRPOP order, and the queue of each."""
        keys, owners = [], []
        for pri in self.priority_steps:
            for queue in queues:
                keys.append(self._q_for_pri(queue, pri))
                owners.append(queue)
        return keys, owners

    def _fetch_args(self, keys: Sequence[str], owners: Sequence[str], limit: int) -> list[Any]:
        """KEYS and ARGV of the fetch script, the first key left for the client to prefix.

        kombu's prefixing client (``global_keyprefix``) prefixes only the first key of an
        EVALSHA; the others are prefixed here (as kombu does for its own scripts).
        """
        prefix = self.global_keyprefix
        script_keys = [self.unacked_key, prefix + self.unacked_index_key, *(prefix + k for k in keys)]
        flags = "".join("0" if q in self._no_ack_queues else "1" for q in owners)
        return [*script_keys, limit, time(), flags]

    def _load_script(self) -> None:
        self._create_client().script_load(FETCH)
        self._script_loaded = True

    def _free_slots(self) -> int:
        free = self.qos.can_consume_max_estimate()
        return self.fetch_limit if free is None else max(1, min(self.fetch_limit, int(free)))

    def _wait_key(self) -> str:
        """The list a wait blocks on: the first queue's (its highest priority)."""
        return str(self._q_for_pri(self.active_queues[0], 0))

    def _deliver_fetched(self, reply: Sequence[Any], owners: Sequence[str], keys: Sequence[str]) -> bool:
        """Deliver what the script returned; whether a message came from a key not waited on."""
        deliveries: list[tuple[dict[str, Any], str, bool]] = []
        from_others = False
        wait_key = self._wait_key() if self.active_queues else None
        for i in range(0, len(reply), 2):
            position, raw = int(reply[i]), bytes_to_str(reply[i + 1])
            if position == 0:
                log.critical(_NOT_KOMBUS, raw)
                continue
            queue = owners[position - 1]
            from_others = from_others or keys[position - 1] != wait_key
            try:
                payload = loads(raw)
            except ValueError:
                log.critical(_NOT_KOMBUS, raw)
                continue
            deliveries.append((payload, queue, queue not in self._no_ack_queues))
        for queue in dict.fromkeys(q for _, q, _ in deliveries):
            self._queue_cycle.rotate(queue)
        recorded = self.qos.recorded
        first_error: BaseException | None = None
        for payload, queue, record in deliveries:
            tag = (payload.get("properties") or {}).get("delivery_tag")
            if record:
                recorded.add(tag)
            try:
                self.connection._deliver(payload, queue)
            except Exception as exc:  # the others were recorded too: deliver them anyway
                first_error = first_error or exc
            finally:
                recorded.discard(tag)
        if first_error is not None:
            raise first_error
        return from_others

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        """One message, taken and recorded in one step (``basic_get``)."""
        if not self.atomic:
            return super()._get(queue)
        keys, owners = self._fetch_keys([queue])
        with self.conn_or_acquire() as client:
            args = self._fetch_args(keys, owners, 1)
            try:
                reply = client.evalsha(FETCH_SHA, len(keys) + 2, *args)
            except NoScriptError:
                self._load_script()
                reply = client.evalsha(FETCH_SHA, len(keys) + 2, *args)
            self._maybe_update_queues_expire(client, queue)
        if not reply or int(reply[0]) == 0:
            if reply:
                log.critical(_NOT_KOMBUS, reply[1])
            raise Empty()
        payload = loads(bytes_to_str(reply[1]))
        self.qos.recorded.add(payload["properties"]["delivery_tag"])
        return payload

    # -- the event loop (MultiChannelPoller) -------------------------------------------------

    def _send_fetch(self, queues: Sequence[str]) -> Pending:
        """Send the fetch script on the consuming connection; what to read its reply with."""
        if not self._script_loaded:
            self._load_script()
        keys, owners = self._fetch_keys(queues)
        limit = self._free_slots()
        command = ["EVALSHA", FETCH_SHA, len(keys) + 2, *self._fetch_args(keys, owners, limit)]
        if self.global_keyprefix:
            command = self.client._prefix_args(command)
        self.client.connection.send_command(*command)
        return Pending("EVALSHA", owners, keys, limit)

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self.atomic:
            super()._brpop_start(timeout)
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        if self._fetch_next:
            self._pending = self._send_fetch(queues)
        elif self._pause_next:
            key = self.global_keyprefix + self._wait_key() + self.sep + "pause"
            connection.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", max(self.fetch_pause, 0.001))
            self._pending = _PAUSE
        else:
            key = self.global_keyprefix + self._wait_key()
            wait = timeout if timeout is not None else min(self._poll_interval, self.brpop_timeout)
            connection.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", max(wait, 0.001))
            self._pending = _WAIT

    def _poll_error(self, type: str, **options: Any) -> Any:
        # kombu reads the pending reply as a BRPOP's and drops it; here it may be a fetch's
        # (messages already recorded) or a wait's: read it as what it is, and deliver.
        if type == "BRPOP" and self.atomic and self._pending is not None:
            return self._brpop_read(**options)
        return super()._poll_error(type, **options)

    def _read_reply(self, command: str, **options: Any) -> Any:
        try:
            return self.client.parse_response(self.client.connection, command, **options)
        except self.connection_errors:
            # As kombu: disconnect, so the next iteration reconnects. A fetch whose reply is
            # lost here left its messages in ``unacked``: restored after the visibility timeout.
            self._fetch_next = True
            self.client.connection.disconnect()
            raise

    def _brpop_read(self, **options: Any) -> Any:
        if not self.atomic:
            return super()._brpop_read(**options)
        pending, self._pending = self._pending or _WAIT, None
        try:
            for attempt in range(3):
                try:
                    reply = self._read_reply(pending.command, **options)
                    if pending.command == "BLMOVE":
                        if reply is None and pending is not _PAUSE:  # nothing for a while
                            self._poll_interval = min(self._poll_interval * 2, float(self.brpop_timeout or 1))
                        # Something is on the key waited on, or it is time to look at the others:
                        # fetch now, in this same turn of the loop (unless the channel is closing).
                        queues = self._queue_cycle.consume(len(self.active_queues))
                        if not queues or self._closing:
                            raise Empty()
                        pending = self._send_fetch(queues)
                        reply = self._read_reply(pending.command)
                    break
                except NoScriptError:  # the server lost its scripts (restart, SCRIPT FLUSH)
                    self._script_loaded = False
                    if attempt == 2:
                        raise
                    queues = self._queue_cycle.consume(len(self.active_queues))
                    if not queues:
                        raise Empty() from None
                    pending = self._send_fetch(queues)
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()
        # A fetch that took less than it could emptied the lists: wait next (the wait returns at
        # once if the list waited on has had a message since). A full one: fetch again.
        taken = len(reply) // 2
        self._fetch_next = taken >= pending.limit
        self._pause_next = bool(self.fetch_pause) and 0 < taken < pending.limit
        if not reply:
            raise Empty()
        if self._deliver_fetched(reply, pending.owners, pending.keys):
            self._poll_interval = self.fetch_poll_min
        return True


def server_has_blmove(client: Any) -> bool:
    """Whether the Redis server of ``client`` is 6.2 or newer (has BLMOVE)."""
    version = str(client.info("server").get("redis_version", "0"))
    major, minor, *_ = (int(p) if p.isdigit() else 0 for p in (*version.split("."), "0", "0"))
    return (major, minor) >= (6, 2)
