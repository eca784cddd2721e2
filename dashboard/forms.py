from django import forms

from common import tokens
from common.models import ApiToken


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. 'CI: digits repo'")
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.FULL)
    expires_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=tokens.MAX_EXPIRY_DAYS,
        label="Expires after (days)",
        help_text="Empty: never",
    )
