"""The entry point of ``python -m ebmjax.main``; the application is :mod:`ebmjax.apps.main`."""

from ebmjax.apps.main import main

if __name__ == "__main__":
    main()
