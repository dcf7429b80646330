"""The entry point of ``python -m ebmjax.compare``; the application is :mod:`ebmjax.apps.compare`."""

from ebmjax.apps.compare import main

if __name__ == "__main__":
    main()
