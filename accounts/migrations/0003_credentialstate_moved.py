# CredentialState is the app's now (`realtime.CredentialState`): `realtime` 0008 has adopted
# this app's table and content type, so the model leaves this app's state and nothing happens
# to the database. Kept with 0001 and 0002, so that the recorded history stays this app's own.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_refresh_revoked_at'),
        ('realtime', '0008_credentialstate'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='CredentialState')],
            database_operations=[],
        ),
    ]
