; Inno Setup script: pollama-<version>-windows-x64-setup.exe from dist\pollama (packaging/build.py makes it).
;
;   iscc /DAppVersion=0.1.0 /DBundleDir=..\..\dist\pollama /DOutputDir=..\..\dist packaging\windows\pollama.iss
;
; Installs for the current user only (no administrator rights: {userpf} is
; %LOCALAPPDATA%\Programs), adds a Start-menu entry for the tray app and, if the
; person ticks it, launch at login: the same HKCU Run value the app's own Settings
; checkbox reads and writes (ui/autostart.py, value "pollama"), so either can turn
; it off. Uninstalling removes the program, the entry and that value; models in
; %USERPROFILE%\.ollama\models are the person's and stay.
;
; Signing (README: Signing): pass /DSign and a sign tool named pollamasign, whose
; command Inno runs on the installer and the uninstaller ($f is the file):
;   iscc /DSign "/Spollamasign=signtool sign /fd sha256 /tr http://timestamp.digicert.com /td sha256 /f cert.pfx /p PASSWORD $f" ...
; The bundle's own executables are signed before this runs (the workflow does it).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\pollama"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

[Setup]
AppId={{6B0F3C1E-5A7D-4E8B-9C2F-1D3E5A7B9C0D}
AppName=pollama
AppVersion={#AppVersion}
AppPublisher=pollama developers
DefaultDirName={userpf}\pollama
DefaultGroupName=pollama
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=pollama-{#AppVersion}-windows-x64-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\pollama-app.exe
CloseApplications=yes
#ifdef Sign
SignTool=pollamasign
SignedUninstaller=yes
#endif

[Tasks]
Name: "autostart"; Description: "Start pollama when I log in"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{userprograms}\pollama"; Filename: "{app}\pollama-app.exe"; Parameters: "app"; Comment: "Run large language models locally"
Name: "{userprograms}\Uninstall pollama"; Filename: "{uninstallexe}"

[Registry]
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "pollama"; ValueData: """{app}\pollama-app.exe"" app --hidden"; Tasks: autostart; Flags: uninsdeletevalue
; Removed on uninstall even when the app's Settings, not the installer, turned it on.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: none; ValueName: "pollama"; Flags: uninsdeletevalue dontcreatekey

[Run]
Filename: "{app}\pollama-app.exe"; Parameters: "app"; Description: "Start pollama now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
Filename: "{sys}\taskkill.exe"; Parameters: "/IM pollama-app.exe /F"; Flags: runhidden; RunOnceId: "StopTray"
