"""`python -m sender` (Procfile `sender`): the sender pool."""
from sender.pool import main

main()
