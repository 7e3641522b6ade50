"""The console's login and password change: Django's views, thin, behind the failed-login
limits; what they record is in governance/accounts.py."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.db import transaction
from django.urls import reverse_lazy

from governance.accounts import login_failed, login_succeeded, password_changed
from governance.login_guard import client_address, login_wait


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        wait = login_wait(username=username, address=client_address(request))
        if wait:
            # Refused before the form is validated: validating would check the password.
            form = self.form_class(request, initial={"username": username[:150]})
            minutes = -(-wait // 60)
            context = self.get_context_data(form=form, locked_out_minutes=minutes)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        username = self.request.POST.get("username", "")
        login_failed(username=username, address=client_address(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        response = super().form_valid(form)
        login_succeeded(user=form.get_user(), address=client_address(self.request))
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Any console user changes their own password (the demo prints one once); the old one
    is required, the password validators apply, the change is audited."""

    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("dashboard")

    def form_valid(self, form):
        with transaction.atomic():  # the new password and its audit event, together
            response = super().form_valid(form)
            password_changed(user=form.user)
        messages.success(self.request, "Your password is changed.")
        return response
