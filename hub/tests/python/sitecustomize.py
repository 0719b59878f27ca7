"""Points the unmodified komlogd 0.12.0 at a local komlog-hub.

komlogd 0.12.0 hard-codes https://www.komlog.io/login and
https://agents.komlog.io/ as string constants inside
KomlogSession._auth and KomlogSession._ws_connect. When the environment gives
KOMLOG_HUB_LOGIN_URL and KOMLOG_HUB_WS_URL, this module (found on PYTHONPATH
and imported by Python at start-up) waits for komlogd.api.session to be
imported and then replaces those two constants in the functions' code objects.
Nothing installed is edited; without the variables it does nothing.
"""
import importlib.util
import os
import sys
import types

_URLS = {
    'https://www.komlog.io/login': os.environ.get('KOMLOG_HUB_LOGIN_URL'),
    'https://agents.komlog.io/': os.environ.get('KOMLOG_HUB_WS_URL'),
}


def _rewrite(code):
    consts = []
    for c in code.co_consts:
        if isinstance(c, str) and c in _URLS:
            c = _URLS[c]
        elif isinstance(c, types.CodeType):
            c = _rewrite(c)
        consts.append(c)
    return types.CodeType(
        code.co_argcount, code.co_kwonlyargcount, code.co_nlocals,
        code.co_stacksize, code.co_flags, code.co_code, tuple(consts),
        code.co_names, code.co_varnames, code.co_filename, code.co_name,
        code.co_firstlineno, code.co_lnotab, code.co_freevars,
        code.co_cellvars)


class _PatchSessionUrls:
    TARGET = 'komlogd.api.session'

    def find_spec(self, name, path, target=None):
        if name != self.TARGET:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            for name in ('_auth', '_ws_connect'):
                f = getattr(module.KomlogSession, name)
                f.__code__ = _rewrite(f.__code__)

        spec.loader.exec_module = exec_and_patch
        return spec


if all(_URLS.values()):
    sys.meta_path.insert(0, _PatchSessionUrls())
