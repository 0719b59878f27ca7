"""Application metrics with Kaneda's API, sent to the local komlogd agent.

``Metrics`` offers Kaneda's calls (``gauge``, ``increment``, ``decrement``,
``timing``, ``event``, ``custom`` and ``timed``); each puts a measurement on a
bounded in-process queue and returns at once. A daemon thread drains the queue,
sums counters per flush and sends the samples every ``flush_interval`` seconds
as ``samples`` requests on the agent's control socket (``komlogd.sock``, beside
its komlogd.yaml). The agent stores them as ordinary samples.

Naming rule (the same as the Rust crate ``komlog-metrics``): the name is split
at ``.``; in each level every character outside ``[A-Za-z0-9_-]`` becomes
``_`` and an empty level becomes ``_``; the tags, sorted by key then value, are
appended as one level each, ``<key>_<value>``, where every character outside
``[A-Za-z0-9_-]`` (``.`` included) becomes ``_``. ``custom(name, metric, ...)``
writes to ``name.metric``.

When the queue is full a measurement is dropped and counted (``dropped``). When
the agent is down, the batch is dropped (not kept), the failure counted
(``send_failures``, its samples in ``lost``), and the next flush tries again.
"""

from ._metrics import Metrics, custom_uri, uri

__all__ = ["Metrics", "uri", "custom_uri"]
