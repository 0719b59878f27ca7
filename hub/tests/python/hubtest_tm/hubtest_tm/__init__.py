"""A komlogd 0.12.0 package with one transfer method, for the hub tests.

It hooks the datasource `hubtest.in`; on each update it reads the new sample
(an integer as text) and writes the datapoint `hubtest.out` = that integer + 1
at the same time.
"""
from komlogd.api.model.metrics import Datapoint, Datasource
from komlogd.api.transfer_methods import transfermethod
from komlogd.base import logging

SOURCE = Datasource('hubtest.in')
RESULT = Datapoint('hubtest.out')
_bound = []


async def plus_one(t, updated):
    for metric in updated:
        rows = await metric.get(t=t)
        if rows is None:
            logging.logger.error('hubtest_tm: no row for %s at %s', metric.uri, t.hex)
            continue
        value = int(str(rows.iloc[-1]).strip()) + 1
        logging.logger.info('hubtest_tm: %s -> hubtest.out = %d', metric.uri, value)
        RESULT.insert(t=t, value=value)


async def load():
    tm = transfermethod(f=plus_one, f_params={'source': SOURCE})
    bound = await tm.bind()
    _bound.append(tm)  # the index keeps only a weak reference
    logging.logger.info('hubtest_tm: transfer method bound: %s', bound)
