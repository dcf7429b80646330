"""The entry point of ``python -m ebmjax.bench``; the application is :mod:`ebmjax.apps.bench`."""

from ebmjax.apps.bench import main

if __name__ == "__main__":
    main()
