import sys

from ._sigint import HELD

HELD.hold()  # already holding when the package saw ``python -m minidl``; Ctrl-C is reported by main()
try:
    from .cli import main
except KeyboardInterrupt:  # not held (not the main thread, or a handler of the user's): the same one line
    print("minidl: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
