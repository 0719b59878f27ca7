from setuptools import setup

setup(
    name='hubtest_tm',
    version='1.0',
    packages=['hubtest_tm'],
    entry_points={'komlogd.package': ['load = hubtest_tm:load']},
)
