import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C before main() can handle it: the same one line and status
    print("minidl: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
