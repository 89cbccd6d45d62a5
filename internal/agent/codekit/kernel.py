"""sbx's Python context kernel: runs code sent by sbx-agent in one persistent
__main__, one run at a time.

Protocol: fd 3 carries commands from the agent, fd 4 answers, one JSON
object per line. At start the kernel sends {"type": "ready"}. A command
{"type": "run", "id": N, "code": "...", "env": {...}} runs the code with env
set for the run only; then the kernel captures and closes open figures,
flushes stdout and stderr, writes the marker (SBX_KERNEL_MARKER) to both,
and answers {"type": "done", "id": N, "code": exit code, "error": {name,
value, traceback} or null, "result": repr of the last expression or null}.
SIGINT interrupts a run (KeyboardInterrupt) and is ignored between runs.
EOF on fd 3 ends the kernel.
"""

import ast
import asyncio
import builtins
import inspect
import json
import linecache
import os
import signal
import sys
import traceback
import types

_MARKER = os.environ.pop("SBX_KERNEL_MARKER", "").encode()
_MAX_RESULT = 256 << 10

os.set_inheritable(3, False)
os.set_inheritable(4, False)
_cmds = os.fdopen(3, "rb")  # buffered: commands are read by the line
_answers = os.fdopen(4, "w", buffering=1)
_here = os.path.dirname(os.path.abspath(__file__))

# Like an interactive interpreter: modules are found in the working
# directory first; sbx's figure backend after everything else.
sys.path[0] = ""
sys.path.append(os.path.join(_here, "lib"))
sys.argv = [""]

_main = types.ModuleType("__main__")
_main.__dict__["__builtins__"] = builtins
sys.modules["__main__"] = _main
_loop = None
_running = False


def _on_sigint(signum, frame):
    if _running:
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, _on_sigint)


def _send(msg):
    _answers.write(json.dumps(msg) + "\n")
    _answers.flush()


def _evaluate(co, g):
    global _loop
    v = eval(co, g)
    if co.co_flags & inspect.CO_COROUTINE:
        if _loop is None:
            _loop = asyncio.new_event_loop()
        v = _loop.run_until_complete(v)
    return v


def _execute(code, n):
    name = "<cell-%d>" % n
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    tree = compile(code, name, "exec", ast.PyCF_ONLY_AST | flags)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    g = _main.__dict__
    _evaluate(compile(tree, name, "exec", flags), g)
    if last is not None:
        v = _evaluate(compile(last, name, "eval", flags), g)
        if v is not None:
            builtins._ = v
            return v
    return None


def _error(e):
    tb = e.__traceback__
    # Drop the kernel's own frames: the user's code starts at its cell.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(e), e, tb))
    return {"name": type(e).__name__, "value": str(e), "traceback": text}


def _repr(v):
    try:
        r = repr(v)
    except BaseException as e:
        r = "<repr failed: %s>" % type(e).__name__
    if len(r) > _MAX_RESULT:
        r = r[:_MAX_RESULT] + "..."
    return r


def _run(cmd):
    global _running
    n = cmd.get("id", 0)
    saved = {}
    for k, v in (cmd.get("env") or {}).items():
        saved[k] = os.environ.get(k)
        os.environ[k] = v
    code, err, result = 0, None, None
    try:
        try:
            _running = True
            value = _execute(cmd.get("code", ""), n)
        finally:
            _running = False
        if value is not None:
            result = _repr(value)
    except KeyboardInterrupt as e:
        _running = False
        code, err = 130, _error(e)
    except SystemExit as e:
        _running = False
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException as e:
        _running = False
        code, err = 1, _error(e)
    try:
        mpl = sys.modules.get("sbx_mpl_backend")
        if mpl is not None:
            mpl.flush(True)
    except BaseException:
        pass
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            f.flush()
        except BaseException:
            pass
    for fd in (1, 2):
        try:
            os.write(fd, _MARKER)
        except OSError:
            pass
    _send({"type": "done", "id": n, "code": code, "error": err, "result": result})


def main():
    _send({"type": "ready", "pid": os.getpid(), "version": sys.version.split()[0]})
    while True:
        line = _cmds.readline()
        if not line:
            return
        try:
            cmd = json.loads(line)
        except ValueError:
            continue
        if cmd.get("type") == "run":
            _run(cmd)


main()
