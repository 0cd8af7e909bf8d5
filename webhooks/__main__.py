"""`python -m webhooks` (Procfile `webhooks`): the webhook deliverer."""
from webhooks.deliverer import main

main()
